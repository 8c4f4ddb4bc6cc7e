"""The Ray side of a sweep, and the only modules of resweep that import Ray: the driver, the
trial actor, the schedulers, the state archive, the callbacks (progress, trackers), finding
and checking the cluster, and what counts as a node loss."""
