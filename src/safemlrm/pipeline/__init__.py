"""Running an audit: plan, generate, judge, each stage committed to the run store as it goes.

Nothing is imported here: the backends import `pipeline.concurrency`, and the runner imports the
backends, so the package stays a namespace and each caller imports the module it needs.
"""
