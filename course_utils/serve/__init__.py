"""The web app over an exported learner (lesson 3's deployment): predictor.py (the model and its inputs),
feedback.py (the corrections store), app.py (the Starlette routes), cli.py (`serve`), static/ (the page)."""

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name
