"""Ray clusters: addresses, auth tokens, local multi-node clusters, job submission and storage filesystems."""
