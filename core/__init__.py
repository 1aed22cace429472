"""The base package: settings, the event contract, the storage layout, every table's schema and
the base class of errors a user can fix.

It imports no other package of the project and none of pyspark, Airflow or Great Expectations,
so every part (``streaming``, ``jobs``, ``expectations``, ``dags``) and every program above
them (``engagement``) can import it without pulling in more.
"""
