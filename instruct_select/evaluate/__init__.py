"""Per-capability evaluation of a (fine-tuned) causal LM: greedy answers, checkers, summaries."""
from instruct_select.evaluate.capabilities import evaluate_capabilities, summarise, write_metrics
from instruct_select.evaluate.checkers import CHECKERS
from instruct_select.evaluate.generation import generate_greedy

__all__ = ["CHECKERS", "evaluate_capabilities", "generate_greedy", "summarise", "write_metrics"]
