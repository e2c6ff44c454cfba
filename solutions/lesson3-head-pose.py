"""Reference answers for the exercises at the end of nbs/lesson3-head-pose.ipynb (for teachers; students: try
first).

Each `# %% name` section is what a student would type into the answer cell of exercise `name`; with
COURSE_SOLUTIONS=1 the notebook's checks run these sections in the notebook's namespace instead of the student's
cells (course_utils/exercises/)."""

# %% my_center
def my_center(pose_path, cal_path):
    cal = [[float(v) for v in line.split()] for line in open(cal_path).read().splitlines()[:3]]
    fx, cx, fy, cy = cal[0][0], cal[0][2], cal[1][1], cal[1][2]
    x, y, z = (float(v) for v in open(pose_path).read().split()[-3:])  # the last line: the centre in mm
    return (y * fy / z + cy, x * fx / z + cx)                           # (row, col)


# %% my_to_unit
def my_to_unit(point, size):
    h, w = size
    row, col = point
    return [(2 * row + 1) / h - 1, (2 * col + 1) / w - 1]


# %% my_is_valid
def my_is_valid(o):
    return o.parent.name == "13"
