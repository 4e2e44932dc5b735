"""The top-level workflow: every requested run, acquired and simulated doses."""

from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion.workflows.asl import init_asl_wf
from bids_perfusion.workflows.dsc import init_dsc_wf, simulated_dose_text


def init_bids_perfusion_wf(runs, options, output_dir, work_dir, asl_runs=(), asl_options=None):
    """One :func:`init_dsc_wf` per DSC run and per dose (acquired, then each simulated),
    and of its super-resolution when asked, and one :func:`init_asl_wf` per ASL run.

    Runs are independent sub-workflows: a failure in one leaves the others running.
    """
    workflow = Workflow(name="bids_perfusion_wf", base_dir=str(work_dir))
    if options.simulate_doses:
        workflow.__postdesc__ = simulated_dose_text(options.simulate_doses,
                                                    options.lowdose_model,
                                                    options.lowdose_average)
    for run in runs:
        for dose in (1.0, *options.simulate_doses):
            workflow.add_nodes([init_dsc_wf(run, options, output_dir, dose=dose)])
        if options.superres:
            workflow.add_nodes([init_dsc_wf(run, options, output_dir, superres=True)])
    for run in asl_runs:
        workflow.add_nodes([init_asl_wf(run, asl_options, output_dir)])
    return workflow
