"""Jobs: a durable queue of work that outlives the notebook (:mod:`~vastnb.jobs.queue`), and
a job's states (:mod:`~vastnb.jobs.states`). The controller that runs them and the user's
``vast.submit(...)`` build on these."""
