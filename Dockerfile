# The same install steps as the README.
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN python -m pip install --no-cache-dir .
ENTRYPOINT []
CMD ["kumoclient", "--help"]
