// The page of the lesson 3 web app: send a photo (or a text) to /predict, show the answer, and send a
// correction to /feedback. Plain JavaScript, no build step.
const $ = (id) => document.getElementById(id);
let info = null;     // GET /info: kind, classes, ...
let current = null;  // the input shown: {file} or {text}, its result, and for points the clicked point

async function call(url, options) {
  const response = await fetch(url, Object.assign({method: 'POST'}, options));
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch (e) {  // not JSON (a proxy's error page, say): show what came back as text
    throw new Error(`${response.status} ${response.statusText}: ${text.slice(0, 300) || 'no answer'}`);
  }
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function el(tag, props, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

async function predict(input) {
  current = input;
  $('status').textContent = 'Predicting…';
  $('status').className = '';
  $('feedback').hidden = true;
  try {
    const options = input.file ? {body: formWith(input.file)} : jsonBody({text: input.text});
    showResult(await call('/predict', options));
    $('status').textContent = '';
  } catch (e) {
    $('result').replaceChildren();
    $('status').textContent = e.message;
    $('status').className = 'error';
  }
}

function formWith(file) {
  const form = new FormData();
  form.append('file', file);
  return form;
}

function jsonBody(data) {
  return {headers: {'Content-Type': 'application/json'}, body: JSON.stringify(data)};
}

function showResult(res) {
  current.result = res;
  const show = {segmentation: showMask, points: showPoints}[info.kind] || showBars;
  $('result').replaceChildren(...show(res));
  $('feedback').hidden = info.kind === 'segmentation';  // masks are not corrected here
  $('correct').hidden = true;
  $('wrong').hidden = false;
  $('feedback-status').textContent = '';
}

function showBars(res) {  // classifiers: every class with its probability as a bar
  const answer = Array.isArray(res.prediction) ? (res.prediction.join(', ') || '(no tag above the threshold)') : res.prediction;
  const rows = res.labels.map((label, i) => el('div', {className: 'row'},
    el('span', {className: 'name', textContent: label}),
    el('span', {className: 'bar', style: `width: ${Math.max(1, 200 * res.probabilities[i])}px`}),
    el('span', {className: 'prob', textContent: res.probabilities[i].toFixed(3)})));
  return [el('p', {id: 'prediction', textContent: `Prediction: ${answer}`}), ...rows];
}

function showMask(res) {  // segmentation: the mask over the photo as the model saw it, and a legend
  const photo = el('div', {className: 'photo'},
    el('img', {src: `data:image/png;base64,${res.image_png}`, alt: 'photo'}),
    el('img', {className: 'mask', src: `data:image/png;base64,${res.mask_png}`, alt: 'predicted mask'}));
  const legend = res.legend.map((c) => el('div', {className: 'row'},
    el('span', {className: 'swatch', style: `background: ${c.colour}`}),
    el('span', {className: 'name', textContent: c.label}),
    el('span', {className: 'prob', textContent: `${(100 * c.share).toFixed(1)}% of pixels`})));
  return [photo, ...legend];
}

function showPoints(res) {  // points: the photo with the predicted point; a click sets the right one
  const canvas = el('canvas', {id: 'canvas'});
  const img = new Image();
  img.onload = () => {
    [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
    drawPoints(canvas, img);
  };
  img.src = URL.createObjectURL(current.file);
  canvas.addEventListener('click', (event) => {
    if ($('correct').hidden) return;
    const box = canvas.getBoundingClientRect();
    current.point = [(event.clientY - box.top) * canvas.height / box.height,
                     (event.clientX - box.left) * canvas.width / box.width];
    drawPoints(canvas, img);
  });
  const where = res.points.map(([r, c]) => `(row ${r}, col ${c})`).join(', ');
  return [el('p', {id: 'prediction', textContent: `Predicted point: ${where}`}), el('div', {className: 'photo'}, canvas)];
}

function drawPoints(canvas, img) {
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const cross = ([r, c], colour) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = Math.max(2, canvas.width / 150);
    const s = canvas.width / 30;
    ctx.beginPath();
    ctx.moveTo(c - s, r); ctx.lineTo(c + s, r); ctx.moveTo(c, r - s); ctx.lineTo(c, r + s);
    ctx.stroke();
  };
  current.result.points.forEach((p) => cross(p, 'red'));
  if (current.point) cross(current.point, 'lime');
}

function showPicker() {  // "Wrong? The right answer is ...": a class, tags, or a click on the photo
  let picker;
  if (info.kind === 'points') {
    picker = el('span', {textContent: 'where you click on the photo.'});
  } else if (info.kind === 'multi-label') {
    const predicted = new Set(current.result.prediction);
    picker = el('span', {id: 'tags'}, ...info.classes.map((c) => el('label', {},
      el('input', {type: 'checkbox', className: 'tag', value: c, checked: predicted.has(c)}), ` ${c} `)));
  } else {
    picker = el('select', {id: 'correct-select'}, el('option', {value: '', textContent: 'choose…'}),
      ...info.classes.map((c) => el('option', {value: c, textContent: c})));
  }
  $('picker').replaceChildren(picker);
  $('correct').hidden = false;
  $('wrong').hidden = true;
}

function correction() {
  if (info.kind === 'points') {
    if (!current.point) throw new Error('Click on the photo where the point should be.');
    return {row: current.point[0].toFixed(1), col: current.point[1].toFixed(1)};
  }
  if (info.kind === 'multi-label') {
    return {label: [...document.querySelectorAll('.tag:checked')].map((box) => box.value)};
  }
  return {label: $('correct-select').value};
}

async function sendFeedback() {
  try {
    const answer = correction();
    let options;
    if (current.text !== undefined) {
      options = jsonBody({text: current.text, label: answer.label});
    } else {
      const form = formWith(current.file);
      for (const [key, value] of Object.entries(answer)) {
        [].concat(value).forEach((v) => form.append(key, v));
      }
      options = {body: form};
    }
    const res = await call('/feedback', options);
    $('feedback-status').textContent = `Thank you: stored "${res.corrected}" for ${res.stored}.`;
    $('feedback-status').className = 'saved';
    $('correct').hidden = true;
  } catch (e) {
    $('feedback-status').textContent = e.message;
    $('feedback-status').className = 'error';
  }
}

async function start() {
  info = await (await fetch('/info')).json();
  $('title').textContent = `Lesson 3: ${info.kind} model`;
  $('about').textContent = `${info.classes.length} classes: ${info.classes.join(', ')}. Model file: ${info.export} (sha256 ${info.export_sha256}…, trained ${info.trained}).`;
  $(info.input === 'text' ? 'text-input' : 'image-input').hidden = false;
  $('file').addEventListener('change', () => $('file').files[0] && predict({file: $('file').files[0]}));
  $('classify').addEventListener('click', () => predict({text: $('text').value}));
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer.files[0]) predict({file: e.dataTransfer.files[0]});
  });
  $('wrong').addEventListener('click', showPicker);
  $('send').addEventListener('click', sendFeedback);
}

start();
