"""The processing jobs that run in the training image without training anything: the training
pipeline's Evaluate and Champion steps and the monitor pipeline's CollectCaptures, Monitor and
PublishMetrics steps.

SageMaker runs each from the unpacked source bundle's root as `python3 -m processing.<job>`, so they
import the training modules as top-level siblings (`import contract`) exactly as entry points do.
"""
