"""Tests of testbed.campaign."""
