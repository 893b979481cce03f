"""The plain-data definitions of the project's SageMaker pipelines: no SDK, no CDK, no AWS calls."""
