"""Tests of the implementations in lionspec.impls."""
