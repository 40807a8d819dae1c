"""Code shared by every stage: reading and validating data, folds, images, artifacts and their manifests."""
