"""Explanations: attribution methods (Captum), their cost, stability and completeness, and a
global surrogate tree. :func:`shoestring.audit.explain.run.explain` chooses by data kind."""
