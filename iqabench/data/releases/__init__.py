"""Dataset cards for published IQA datasets, read from their official release layouts.

One module per dataset, each exporting `CARD`; they are registered through the
`iqabench.datasets` entry-point group like any third-party dataset.
"""
