# One image for the loader, the Spark master, workers and drivers, and Airflow's components in a
# real deployment (docker-compose.yml).
# The Debian release is named, not implied by `slim`: which JDK packages exist depends on it.
# Debian 13 (trixie) ships OpenJDK 21 and 25, not 17. Spark 4.3 runs on Java 17, 21 and 25;
# on 25 a 10M-event daily run took 0.86-1.03x the time it takes on 17 (README, "Which JDK").
FROM python:3.11-slim-trixie
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-25-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/engagement
COPY pyproject.toml requirements.lock README.md ./
RUN pip install --no-cache-dir uv==0.13.9 && uv pip install --system --no-cache --compile-bytecode -r requirements.lock
COPY core core
COPY engagement engagement
COPY streaming streaming
COPY jobs jobs
COPY expectations expectations
COPY dags dags
RUN uv pip install --system --no-deps .
# The Spark driver's class archive (jobs/class_archive.py): every driver starts and runs its first query 3-4 s sooner.
RUN python -m jobs.class_archive || true
ENV ENGAGEMENT_HOME=/data PYTHONUNBUFFERED=1
ENTRYPOINT ["engagement"]
