"""Platform add-ons, one module each; chart and image versions come from :mod:`testbed.versions`."""
