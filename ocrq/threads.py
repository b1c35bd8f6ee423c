"""The environment variables that size math libraries' thread pools (stdlib only, so a
process can set them before numpy, onnxruntime or Tesseract's OpenMP start)."""

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OMP_THREAD_LIMIT",
)
