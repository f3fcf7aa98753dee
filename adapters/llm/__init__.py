"""OpenAI-compatible LLM clients: chat client, SGCD summarizers, LLM user simulator.

Imports only ``openai``, ``pydantic``, the standard library and ``algorithms.credit_reference``
(no torch), so the local trainer and the verl plugin can both use it.
"""

from .client import ChatClient, Completion, LLMEndpoint, LLMError
from .summarizer import LLMSummarizer, OfflineSummarizer, Summarizer
from .user import END_MARKERS, OUT_OF_SCOPE, STOP, TRANSFER, LLMUser

__all__ = [
    "END_MARKERS",
    "OUT_OF_SCOPE",
    "STOP",
    "TRANSFER",
    "ChatClient",
    "Completion",
    "LLMEndpoint",
    "LLMError",
    "LLMSummarizer",
    "LLMUser",
    "OfflineSummarizer",
    "Summarizer",
]
