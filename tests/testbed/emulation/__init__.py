"""Tests of testbed.emulation."""
