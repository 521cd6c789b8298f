"""Tests of testbed.lab."""
