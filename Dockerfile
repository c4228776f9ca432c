# The framework's container image: Ray's own image (the pinned Ray and Python) with the
# framework installed from its wheel, as a user installs it. Build and run:
#   docker build -t framework:latest .
#   docker run -p 8000:8000 -v "$PWD/model_registry:/home/ray/work/model_registry" \
#     -e FRAMEWORK_API_KEYS framework:latest task=serve serve.host=0.0.0.0
# In a KubeRay RayService, the head and worker containers run this image
# (python -m framework task=build_serve_config target=kuberay writes the manifest).
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-cpu

# -- build: the project's wheel (the bundled conf/ and experiments/ go inside it) ---------
FROM ${RAY_IMAGE} AS build
# the base image runs as its user "ray" (uid 1000, group users); folders it makes are its own
# (WORKDIR alone would make them root's)
USER 1000:100
RUN mkdir -p /home/ray/build
WORKDIR /home/ray/build
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 conf ./conf
COPY --chown=1000:100 experiments ./experiments
COPY --chown=1000:100 framework ./framework
COPY --chown=1000:100 plugins ./plugins
COPY --chown=1000:100 hydra_plugins ./hydra_plugins
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir dist .

# -- runtime: the wheel and its pinned dependencies, nothing of the build ---------------------
FROM ${RAY_IMAGE}
# never root
USER 1000:100
# torch's CPU build (the default index would pull the CUDA build, several GB)
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0
COPY --from=build --chown=1000:100 /home/ray/build/dist /home/ray/dist
WORKDIR /home/ray
RUN python -m pip install --no-cache-dir dist/framework-*.whl \
    && rm -rf dist \
    && mkdir -p work
# the registry, keys and run outputs land here: mount a volume on it
WORKDIR /home/ray/work
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["python", "-m", "framework"]
CMD ["task=serve", "serve.host=0.0.0.0"]
