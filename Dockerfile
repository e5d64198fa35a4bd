# GPU deployment image: NVIDIA's PyTorch container (CUDA, cuDNN, TensorRT Python bindings included).
# It cannot be built in this project's own workplace (no Docker engine, no NVIDIA registry): untested here.
#   docker build -t nasdeploy .
#   docker run --gpus all --rm nasdeploy nasdeploy bench fairnas_a --device cuda
FROM nvcr.io/nvidia/pytorch:25.10-py3
WORKDIR /opt/nasdeploy
COPY pyproject.toml README.md ./
COPY nasdeploy ./nasdeploy
COPY cli.py ./
# Keep the container's own torch/TensorRT; install only what is missing.
RUN pip install --no-cache-dir -e '.[tensorrt]'
ENTRYPOINT []
CMD ["nasdeploy", "--help"]
