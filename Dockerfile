# The regnotify image: the worker, the relay, Flower and the one-shot migrate
# service of docker-compose.yml all run it with different commands.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# psql: the migrate service writes the relay URL and token into
# notification_config with it (psql quotes the values safely).
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Only what the wheel is built from: the SQL is packaged into it (db/sql), so
# the installed app finds its migrations and queries without this folder.
COPY pyproject.toml README.md ./
COPY db ./db
COPY tasks ./tasks
COPY sql ./sql
RUN pip install . && rm -rf /app/*

# Nothing here needs root.
RUN useradd --create-home --uid 10001 regnotify
USER regnotify
WORKDIR /home/regnotify

EXPOSE 8000 5555
CMD ["regnotify", "--help"]
