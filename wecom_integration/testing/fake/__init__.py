"""The fake WeCom, split into modules of at most a few hundred lines.

* org.py, orgmodel.py, orgdata.py: the generated organisation (re-exported by wecom_integration.testing.org).
"""
