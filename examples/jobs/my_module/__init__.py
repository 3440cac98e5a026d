"""Example gearjob jobs: see my_module.jobs."""
