"""Tests of testbed.transport."""
