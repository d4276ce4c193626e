# The stackc-router image, tagged as the router target emits it (docs/router.md#the-image):
#   docker build --pull -t ghcr.io/stackc-dev/stackc-router:0.1.0 .
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
