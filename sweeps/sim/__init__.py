"""The offline simulator of search settings and the replay of ASHA on recorded curves: they
read run folders and recordings, never write a run."""
