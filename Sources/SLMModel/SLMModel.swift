import GGUF
import SLMKernels
