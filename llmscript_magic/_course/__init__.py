"""A class on JupyterHub: budgets checked before a request, the teacher's settings,
tutor mode, and the hub service that holds the course's key.

Sits between the pipeline and the store: the pipeline asks ``budget.Guard`` before
each model request; the notebook applies ``settings.CourseSettings`` to a cell's
options; ``service`` runs apart, as a JupyterHub service, and forwards generations
with the course's key through the ordinary providers.
"""
