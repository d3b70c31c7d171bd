import SLMModel
