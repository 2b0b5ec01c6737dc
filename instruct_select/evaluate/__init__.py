"""Per-capability evaluation of a (fine-tuned) causal LM: greedy answers, checkers, held-out loss, summaries."""
from instruct_select.evaluate.capabilities import evaluate_capabilities, summarise, write_metrics
from instruct_select.evaluate.checkers import CHECKERS
from instruct_select.evaluate.generation import generate_greedy
from instruct_select.evaluate.heldout_loss import heldout_losses

__all__ = ["CHECKERS", "evaluate_capabilities", "generate_greedy", "heldout_losses", "summarise", "write_metrics"]
