"""_sandbox/harness"""
