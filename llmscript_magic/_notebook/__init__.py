"""_notebook"""
