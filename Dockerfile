# One image for the loader, the Spark master, workers and drivers, and Airflow's components in a
# real deployment (docker-compose.yml).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
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
