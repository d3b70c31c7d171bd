import SLMEngine
import SLMProtocol
import SLMSystemd
