"""Paper tables from result JSONs (`python -m probe.table table=NAME`): the cells matched to
the published numbers (`data`), why a cell is not a plain protocol run (`flags`), intervals
and paired differences (`stats`), their text (`render`, `latex`), the plot (`plot`) and the
files (`write`)."""
