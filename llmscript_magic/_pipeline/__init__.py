"""_pipeline"""
