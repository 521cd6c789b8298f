"""Tests of testbed.commands."""
