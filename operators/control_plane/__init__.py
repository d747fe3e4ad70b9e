"""The testbed control plane: tenant auth, admission, job records, backends."""
