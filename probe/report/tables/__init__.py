"""Paper tables from result JSONs (`python -m probe.table table=NAME`): the cells matched to
the published numbers (`data`), their text (`render`), the plot (`plot`) and the files
(`write`)."""
