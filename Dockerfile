# The stackc-router image: `docker build -t stackc-router .`
# Only the router runtime and its dependencies; runs as a non-root user on a read-only root.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY compiler ./compiler
COPY plugins ./plugins
RUN pip install '.[router]' && rm -rf /src

RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin router
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["stackc-router"]
CMD ["--config", "/etc/stackc-router/router.yaml"]
