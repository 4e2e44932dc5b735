"""The top-level workflow: every requested run, acquired and simulated doses."""

from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from bids_perfusion.workflows.asl import init_asl_wf
from bids_perfusion.workflows.dsc import init_dsc_wf, simulated_dose_text
from bids_perfusion.workflows.dsc_front_end import MOTION_OUTPUTS


def init_bids_perfusion_wf(runs, options, output_dir, work_dir, asl_runs=(), asl_options=None,
                           spatial=None, anatomy=None):
    """One :func:`init_dsc_wf` per DSC run and per dose (acquired, then each simulated),
    and of its super-resolution when asked, and one :func:`init_asl_wf` per ASL run.

    Runs are independent sub-workflows: a failure in one leaves the others running. With
    ``spatial`` (:class:`~bids_perfusion.spatial.spaces.SpatialOptions`) asking for spaces
    other than ``run``, every run is co-registered to the T1w of ``anatomy``
    (``{(subject, session): Anatomy}``), and with the template, each subject's T1w is
    normalised once (:func:`~bids_perfusion.workflows.spatial.init_anat_wf`), its warp
    given to every run of the subject.
    """
    workflow = Workflow(name="bids_perfusion_wf", base_dir=str(work_dir))
    if options.simulate_doses:
        workflow.__postdesc__ = simulated_dose_text(options.simulate_doses,
                                                    options.lowdose_model,
                                                    options.lowdose_average)
    add_run = _spatial_runs(workflow, spatial, anatomy or {}, output_dir)
    for run in runs:
        acquired = add_run(run, "dscref", lambda spaces, run=run: init_dsc_wf(
            run, options, output_dir, spatial=spaces))
        for dose in options.simulate_doses:
            simulated = add_run(run, "dscref", lambda spaces, run=run, dose=dose: init_dsc_wf(
                run, options, output_dir, dose=dose, spatial=spaces,
                shared_motion=options.motion_correction))
            if options.motion_correction:
                share_motion(workflow, acquired, simulated)
        if options.superres:
            workflow.add_nodes([init_dsc_wf(run, options, output_dir, superres=True)])
    for run in asl_runs:
        add_run(run, "aslref", lambda spaces, run=run: init_asl_wf(
            run, asl_options, output_dir, spatial=spaces))
    return workflow


def share_motion(workflow, acquired, simulated):
    """Connect the motion correction of the ``acquired`` run's workflow to the front end
    of its ``simulated`` dose (built with ``shared_motion``): the corrected echoes, from
    which the dose is simulated, and the confounds table and its sidecar entries, which
    the dose's outputs write as before. The series is realigned once; the simulation
    reads the same corrected series as when each dose realigned the acquired series
    again (the same computation on the same file)."""
    motion = "front_end_wf.motion_correction"
    workflow.connect(acquired, f"{motion}.out_files",
                     simulated, "front_end_wf.inputnode.in_files")
    for output, field in zip(("confounds", "metadata", "out_file"), MOTION_OUTPUTS,
                             strict=True):
        workflow.connect(acquired, f"{motion}.{output}",
                         simulated, f"front_end_wf.inputnode.{field}")


def _spatial_runs(workflow, spatial, anatomy, output_dir):
    """A function ``add_run(run, reference_suffix, build)`` that adds to ``workflow`` the
    run's workflow ``build(spaces)`` (``spaces`` a
    :class:`~bids_perfusion.workflows.spatial.RunSpaces` or None) and, with the template,
    connects it to the normalisation of its subject's T1w (made on first use); it
    returns the run's workflow."""
    if spatial is None or not spatial.needs_t1w:
        def add_plain(run, suffix, build):
            run_wf = build(None)
            workflow.add_nodes([run_wf])
            return run_wf

        return add_plain
    from bids_perfusion.workflows.spatial import RunSpaces, init_anat_wf, template_warp_input

    anat_wfs = {}

    def add_run(run, suffix, build):
        subject = anatomy[(run.subject, run.session)]
        run_wf = build(RunSpaces(spatial, subject, suffix))
        workflow.add_nodes([run_wf])
        if (target := template_warp_input(run_wf)) is None:
            return run_wf
        if subject.name not in anat_wfs:
            anat_wfs[subject.name] = init_anat_wf(subject, spatial, output_dir)
        workflow.connect(anat_wfs[subject.name], "outputnode.template_warp", run_wf, target)
        return run_wf

    return add_run
