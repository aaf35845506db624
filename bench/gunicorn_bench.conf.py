"""gunicorn's settings for the benchmark's servers: none beyond their command line.

Named so that gunicorn does not read the project's ./gunicorn.conf.py, whose access line
for every request would be measured with each endpoint, as it was not before it existed.
"""
