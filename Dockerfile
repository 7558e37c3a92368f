# syntax=docker/dockerfile:1
# One image for everything: the web app (the default command), the task worker
# (python manage.py db_worker) and the one-off commands (migrate, thena_check,
# reconcile_audit, audit_checkpoint, verify_audit_log). Settings come from the
# environment at run time; nothing secret is built in. See README.md, "Production".
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The production lock, hash-checked, wheels only (nothing is compiled here).
COPY requirements.lock /tmp/requirements.lock
RUN python -m pip install --require-hashes --only-binary=:all: -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock

# CACHE_URL=redis://... needs redis-py, which the lock leaves out. Build with
# --build-arg WITH_REDIS=true (compose: WITH_REDIS=true in .env) to add it, hash-checked.
ARG WITH_REDIS=false
RUN if [ "$WITH_REDIS" = true ]; then \
        echo "redis==8.1.0 --hash=sha256:a4fe1aac3d3b3cc791d4b3d5931c5a956045dc951ee74d1c913ee3ac4d2ee9fb" \
            > /tmp/redis.txt \
        && python -m pip install --require-hashes --only-binary=:all: -r /tmp/redis.txt \
        && rm /tmp/redis.txt; \
    fi

RUN groupadd --system --gid 10001 thena \
    && useradd --system --uid 10001 --gid thena --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin thena

WORKDIR /app
# Owned by root: the app cannot change its own code or static files.
COPY . .

# Static files are collected into the image (whitenoise serves them from STATIC_ROOT).
# The two keys exist for this step only: collectstatic reads no database and signs nothing.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-a-secret \
    AUDIT_HMAC_KEY=collectstatic-only-not-a-secret-0000000000 \
    python manage.py collectstatic --noinput \
    && install -d -o thena -g thena /tmp/prometheus

# Metrics of all gunicorn workers are collected through files in this directory.
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

USER 10001:10001
EXPOSE 8000
# gunicorn.conf.py reads WEB_CONCURRENCY, THENA_REQUEST_BUDGET_SECONDS,
# FORWARDED_ALLOW_IPS and PROMETHEUS_MULTIPROC_DIR; --bind makes the port reachable
# from outside the container whatever the file binds.
CMD ["gunicorn", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "thena_admin.wsgi"]
