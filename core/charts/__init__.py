"""Plotly figure builders, one module a stage. Headless: figures are returned, pages show them."""
