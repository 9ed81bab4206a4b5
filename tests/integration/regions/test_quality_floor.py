"""The quality floor of the one-shot variation model, on designs and seeds no other test uses:
every defective board rejected, no jittered good board rejected, box recall >= 0.95 at IoU > 0.33."""

from edge_inspector.regions.boxes import iou
from edge_inspector.regions.variation import VariationConfig, VariationModel
from edge_inspector.synth.pcb import BoardDesign, make_board, reference_board



def test_quality_floor_on_unseen_designs():
    missed_boards = false_rejects = hits = total = 0
    for design_seed in (4201, 4202, 4203):
        design = BoardDesign(design_seed)
        model = VariationModel(VariationConfig(), [reference_board(design).image])
        for seed in range(1, 13):
            board = make_board(design, 500 + seed, defects=(seed % 3) if seed % 2 == 0 else 0)
            r = model.find(board.image)
            if board.defective:
                missed_boards += not r.boxes
                for d in board.defects:
                    total += 1
                    hits += any(iou(d.box, b.as_list()) > 0.33 for b in r.boxes)
            else:
                false_rejects += bool(r.boxes)
    assert missed_boards == 0
    assert false_rejects == 0
    assert hits / total >= 0.95, f"box recall {hits}/{total}"
