"""taskflow's revisions (a package only so that installed copies ship them)."""
