"""BoundaryPKIWorker: spec model, manifest builders, registration service and kopf handlers."""
