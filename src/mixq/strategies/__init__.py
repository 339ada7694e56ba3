"""Search strategies besides the two phases of Pandey et al. (``mixq.api.search``)."""
