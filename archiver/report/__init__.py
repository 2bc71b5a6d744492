"""What a run archived, for people: thumbnails of image outputs (`previews`) and the markdown
and tables that show them (`render`). Prefect-free: `tasks/artifacts.py` publishes the result.

`previews` depends on nothing else of the domain (the pipeline imports it while the staged
files exist); `render` reads the run summaries. Import the submodules, not this package.
"""
