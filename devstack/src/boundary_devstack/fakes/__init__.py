"""In-memory stand-ins for the Boundary controller and the apiserver, for fast lifecycle tests.
Each keeps the real program's semantics the code relies on, and contract tests run the same
scenarios against the fake and the real program, so neither can drift."""

from boundary_devstack.fakes.boundary import FakeController
from boundary_devstack.fakes.kube import FakeKube

__all__ = ["FakeController", "FakeKube"]
