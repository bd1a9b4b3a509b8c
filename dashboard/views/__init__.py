"""Page views, one module per page; each is thin and reads through `dashboard.access`."""
